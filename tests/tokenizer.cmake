# Tokenizer tests (included from tests/CMakeLists.txt).
#   conformance.tokenizer: `longmixd tokenize` against the reference HF tokenizers (node) on both
#   ../shared fixtures, over tests/conformance/tokenizer_cases.jsonl and a 5 MB corpus built once
#   into the build folder. Skips (77) without ../shared, node or the installed reference.
#   The unit test (tests/unit/test_tokenizer.c) needs none of these; it is registered by the glob
#   in tests/CMakeLists.txt.
add_test(NAME conformance.tokenizer
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/conformance/run-tokenizer-conformance.sh)
set_tests_properties(conformance.tokenizer PROPERTIES
  ENVIRONMENT "${LMX_TEST_ENV};LMX_TOKTEST_DIR=${CMAKE_CURRENT_BINARY_DIR}/tokenizer-conformance"
  TIMEOUT 300 SKIP_RETURN_CODE 77)

# tokenizer.unicode_tables_fresh: the committed common/tokenizer/lmx_unicode_tables.[ch] are what
# common/tokenizer/gen_unicode_tables.py makes (skips without unicode-data or the npm Unicode 16 data).
add_test(NAME tokenizer.unicode_tables_fresh
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/conformance/check-unicode-tables.sh)
set_tests_properties(tokenizer.unicode_tables_fresh PROPERTIES
  ENVIRONMENT "${LMX_TEST_ENV}" TIMEOUT 300 SKIP_RETURN_CODE 77)

# conformance.index: `longmixd index` with both real tokenizers on a 4 MB ../shared corpus:
# per-document ids (found by source file and line) and per-domain counts/totals equal HF's.
add_test(NAME conformance.index COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/conformance/index_conformance.py)
set_tests_properties(conformance.index PROPERTIES
  ENVIRONMENT "${LMX_TEST_ENV};LMX_INDEXTEST_DIR=${CMAKE_CURRENT_BINARY_DIR}/index-conformance"
  TIMEOUT 300 SKIP_RETURN_CODE 77)

# conformance.tokenizer_families: the real tokenizer.json of 10 model families (npm, pinned in
# tests/tools/tokenizers/package-lock.json) against the HF peer on a mixed-script stress set, the
# cases and 1 MB of real text. Skips (77) without node/npm, the peer or the registry.
add_test(NAME conformance.tokenizer_families
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/conformance/run-tokenizer-families.sh)
set_tests_properties(conformance.tokenizer_families PROPERTIES
  ENVIRONMENT "${LMX_TEST_ENV};LMX_TOKFAM_DIR=${CMAKE_CURRENT_BINARY_DIR}/tokenizer-families"
  TIMEOUT 300 SKIP_RETURN_CODE 77 RESOURCE_LOCK tokenizer-families)

# conformance.tokenizer_components: the component matrix (each normalizer / pre-tokenizer variant
# swapped into GPT-2's vocabulary by make-component-tokenizers.py) against the HF peer.
add_test(NAME conformance.tokenizer_components
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/conformance/run-tokenizer-families.sh components)
set_tests_properties(conformance.tokenizer_components PROPERTIES
  ENVIRONMENT "${LMX_TEST_ENV};LMX_TOKFAM_DIR=${CMAKE_CURRENT_BINARY_DIR}/tokenizer-families"
  TIMEOUT 300 SKIP_RETURN_CODE 77 RESOURCE_LOCK tokenizer-families)

# conformance.tokenizer_separators: each family's document separators (index, `longmixd stats`,
# HF's post_processor) against the models' conventions, and served end to end by the real daemon
# (defaults, plans naming bos_token/eos_token, refused plans). Same npm install as the families.
add_test(NAME conformance.tokenizer_separators
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/conformance/tokenizer_separators.py)
set_tests_properties(conformance.tokenizer_separators PROPERTIES
  ENVIRONMENT "${LMX_TEST_ENV};LMX_TOKFAM_DIR=${CMAKE_CURRENT_BINARY_DIR}/tokenizer-families"
  TIMEOUT 300 SKIP_RETURN_CODE 77 RESOURCE_LOCK tokenizer-families)

# tokenizer.hf_char_tables_fresh: the committed common/tokenizer/lmx_hf_char_tables.[ch] (HF's own
# character sets for BertNormalizer and UnicodeScripts) are what gen_hf_char_tables.py probes
# from the reference now (skips without node or the reference).
add_test(NAME tokenizer.hf_char_tables_fresh
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/conformance/check-hf-char-tables.sh)
set_tests_properties(tokenizer.hf_char_tables_fresh PROPERTIES
  ENVIRONMENT "${LMX_TEST_ENV}" TIMEOUT 300 SKIP_RETURN_CODE 77)
