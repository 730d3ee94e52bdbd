"""Builds the llm_datadist and hixl Python packages with the project's CMake.

    cd python && /usr/bin/python3 -m pip install --no-build-isolation .

The extension is built for the interpreter running pip (sys.executable),
with the CMake, compiler, pybind11 (pybind11-dev) and libraries already on the
machine; nothing is downloaded. The wheel carries libllm_datadist.so.0 in
llm_datadist/ (found by both extensions through RPATH $ORIGIN/../llm_datadist).
"""
import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class CMakeBuild(build_ext):
    def run(self):
        self._stage = None
        super().run()

    def stage(self):
        """One CMake build and install for both extensions."""
        if self._stage:
            return self._stage
        build = os.path.abspath(os.path.join(self.build_temp, "cmake"))
        stage = os.path.abspath(os.path.join(self.build_temp, "stage"))
        cfg = ["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
               "-DLLM_DATADIST_BUILD_TESTS=OFF", "-DLLM_DATADIST_BUILD_TOOLS=OFF",
               "-DLLM_DATADIST_BUILD_PYTHON=ON", f"-DLLM_DATADIST_PYTHON={sys.executable}",
               "-DLLM_DATADIST_PY_INSTALL_DIR=python", "-DLLM_DATADIST_PY_INSTALL_RPATH=$ORIGIN/../llm_datadist",
               "-DCMAKE_INSTALL_LIBDIR=lib"]
        if shutil.which("ninja"):
            cfg += ["-G", "Ninja"]
        if shutil.which("ccache"):
            cfg += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
        subprocess.check_call(cfg)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        subprocess.check_call(["cmake", "--build", build, "-j", jobs, "--target", "llm_datadist", "_llm_datadist",
                               "_hixl_py"])
        shutil.rmtree(stage, ignore_errors=True)
        subprocess.check_call(["cmake", "--install", build, "--prefix", stage])
        self._stage = stage
        return stage

    def build_extension(self, ext):
        stage = self.stage()
        package, _, name = ext.name.rpartition(".")
        built = glob.glob(os.path.join(stage, "python", package, name + ".*.so"))
        assert len(built) == 1, built
        out = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        shutil.copy2(built[0], out)
        # The library under its SONAME in llm_datadist/, where both packages'
        # extensions look (RPATH $ORIGIN/../llm_datadist).
        lib = os.path.join(stage, "lib", "libllm_datadist.so.0")
        into = os.path.join(os.path.dirname(os.path.dirname(out)), "llm_datadist")
        os.makedirs(into, exist_ok=True)
        shutil.copy2(os.path.realpath(lib), os.path.join(into, "libllm_datadist.so.0"))


setup(
    name="llm_datadist",
    version="0.1.0",
    description="The LLM-DataDist and HIXL Python APIs (KV-cache transfer) on llm-datadist: TCP and shared memory",
    packages=["llm_datadist", "hixl"],
    package_dir={"llm_datadist": "llm_datadist", "hixl": "hixl"},
    ext_modules=[Extension("llm_datadist._llm_datadist", sources=[]), Extension("hixl.hixl", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.8",
    zip_safe=False,
)
