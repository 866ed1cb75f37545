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
