# Integration tests: tests/integration/test_serve.py starts the real longmixd on ephemeral
# loopback ports and talks HTTP to it; one ctest test per Python test function.
find_package(Python3 REQUIRED COMPONENTS Interpreter)
foreach(t same_bytes spans_trace_to_documents world_size_independence index_matches_input http_errors
          bad_input_errors)
  add_test(NAME integration.${t}
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_serve.py ${t})
  set_tests_properties(integration.${t} PROPERTIES ENVIRONMENT "${LMX_TEST_ENV}" TIMEOUT 300)
endforeach()

# The installed build against ../shared/CONTRACT.md (skipped without ../shared).
add_test(NAME conformance.contract COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/contract-check.sh)
set_tests_properties(conformance.contract PROPERTIES ENVIRONMENT "${LMX_TEST_ENV}" TIMEOUT 600
                     SKIP_RETURN_CODE 77)
