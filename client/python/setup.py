"""Copies liblongmix into the package at build time, so `import longmix` finds it without
LD_LIBRARY_PATH: from $LONGMIX_LIBRARY, else the repository's build/client/ (a CMake build of
this checkout). Without either, the package still installs and finds the library the way
longmix/_lib.py describes (e.g. a system install). Metadata: pyproject.toml."""
import glob
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def find_library():
    env = os.environ.get("LONGMIX_LIBRARY")
    if env:
        if not os.path.exists(env):
            raise SystemExit(f"LONGMIX_LIBRARY={env}: no such file")
        return env
    for pattern in ("build/client/liblongmix.so.0", "build*/client/liblongmix.so.0"):
        found = sorted(glob.glob(os.path.join(HERE, "..", "..", pattern)))
        if found:
            return found[0]
    return None


class BuildPyWithLibrary(build_py):
    def run(self):
        super().run()
        lib = find_library()
        if lib:
            dst = os.path.join(self.build_lib, "longmix", "liblongmix.so.0")
            shutil.copyfile(os.path.realpath(lib), dst)
            os.chmod(dst, 0o755)
            print(f"longmix: bundled {lib}")
        else:
            print("longmix: no liblongmix found to bundle (set LONGMIX_LIBRARY); the installed package "
                  "will look for it on the loader path")


setup(cmdclass={"build_py": BuildPyWithLibrary})
