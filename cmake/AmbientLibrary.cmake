# ambient_library(NAME SOURCES src... [PUBLIC deps...] [PRIVATE deps...]): a module's library target ambient_NAME with
# its alias ambient::NAME, the module's include/ folder public, LibTorch public, and the project's warnings when the
# build defines them (the standalone configuration of apps/gpu_pretrain does not).
include_guard(GLOBAL)

function(ambient_library name)
  cmake_parse_arguments(arg "" "" "SOURCES;PUBLIC;PRIVATE" ${ARGN})
  add_library(ambient_${name} ${arg_SOURCES})
  add_library(ambient::${name} ALIAS ambient_${name})
  target_include_directories(ambient_${name} PUBLIC $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>)
  target_link_libraries(ambient_${name} PUBLIC ${arg_PUBLIC} ${TORCH_LIBRARIES} PRIVATE ${arg_PRIVATE})
  if(TARGET ambient_warnings)
    target_link_libraries(ambient_${name} PRIVATE ambient_warnings)
  endif()
endfunction()

# ambient_openmp(TARGET): compiles TARGET's sources with OpenMP when the compiler has it. ATen's at::parallel_for is
# inline and runs its loop on one thread in a translation unit compiled without OpenMP (ATen/ParallelOpenMP.h), so
# a target whose own code calls at::parallel_for needs this to run it on LibTorch's threads. Not in the LibTorch-only
# configuration: a pip LibTorch brings its own copy of libgomp, and two OpenMP runtimes in one process fight over
# the cores (its loops then run on one thread, with the same results).
function(ambient_openmp target)
  if(AMBIENT_LIBTORCH_ONLY)
    return()
  endif()
  find_package(OpenMP QUIET COMPONENTS CXX)
  if(OpenMP_CXX_FOUND)
    target_link_libraries(${target} PRIVATE OpenMP::OpenMP_CXX)
  endif()
endfunction()
