# CUDA support (issue 11). Included from the top-level CMakeLists.txt at
# file scope, before any target: enable_language must be called there.
#
#   LLM_DATADIST_WITH_CUDA  ON by default when a CUDA toolkit is found
#                           (nvcc on PATH, CUDACXX, or /usr/local/cuda).
#
# The GPU code is its own object library (src/gpu/CMakeLists.txt), linked
# into both libraries with the CUDA runtime *statically*: the library then
# loads and runs where no driver is installed (the runtime opens
# libcuda.so.1 on first use), and without a GPU kDevice means host memory.
include(CheckLanguage)
if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc CACHE FILEPATH "CUDA compiler")
endif()
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(_lldd_cuda_default ON)
else()
  set(_lldd_cuda_default OFF)
endif()
option(LLM_DATADIST_WITH_CUDA "Build the NVIDIA GPU memory support (needs the CUDA toolkit)" ${_lldd_cuda_default})

if(LLM_DATADIST_WITH_CUDA)
  if(NOT CMAKE_CUDA_ARCHITECTURES)
    # Data-centre GPUs (A100, H100/H200) natively, plus PTX for later ones.
    set(CMAKE_CUDA_ARCHITECTURES "80-real;90-real;90-virtual")
  endif()
  enable_language(CUDA)
  # The kernels are CUDA C++17 (nvcc 13 knows no "CUDA20" dialect name for
  # CMake 3.25); targets holding CUDA objects would otherwise ask for it.
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
  # CUDA 12.0 at least (the VMM and driver-entry-point calls used); before
  # 12.5 the GPU layer asks cudaGetDriverEntryPoint, not ...ByVersion.
  if(CUDAToolkit_VERSION VERSION_LESS 12.0)
    message(FATAL_ERROR "llm-datadist: GPU support needs CUDA 12.0 or later (found ${CUDAToolkit_VERSION}); "
                        "configure with -DLLM_DATADIST_WITH_CUDA=OFF to build without it")
  endif()
  message(STATUS "llm-datadist: GPU support ON (CUDA ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES})")
else()
  message(STATUS "llm-datadist: GPU support OFF (kDevice caches are host memory)")
endif()
