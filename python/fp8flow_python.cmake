# fp8flow._core (nanobind, target fp8flow_python) and the package directory build/python/fp8flow that tests
# import.
# Python and nanobind: scikit-build-core's when it drives the build (SKBUILD), else the project's .venv.
if(NOT SKBUILD AND NOT Python_EXECUTABLE AND EXISTS ${CMAKE_SOURCE_DIR}/.venv/bin/python)
  set(Python_EXECUTABLE ${CMAKE_SOURCE_DIR}/.venv/bin/python)
endif()
find_package(Python 3.9 COMPONENTS Interpreter Development.Module)
set(FP8FLOW_HAVE_PYTHON OFF)
if(Python_FOUND)
  execute_process(COMMAND ${Python_EXECUTABLE} -m nanobind --cmake_dir OUTPUT_VARIABLE FP8FLOW_NANOBIND_DIR
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE FP8FLOW_NANOBIND_RC)
  if(FP8FLOW_NANOBIND_RC EQUAL 0)
    find_package(nanobind CONFIG QUIET PATHS ${FP8FLOW_NANOBIND_DIR} NO_DEFAULT_PATH)
  endif()
endif()
if(NOT nanobind_FOUND)
  if(SKBUILD)
    message(FATAL_ERROR "fp8flow: nanobind not found by ${Python_EXECUTABLE} (pyproject.toml lists it)")
  endif()
  message(STATUS "fp8flow: Python module off (no Python development headers or no nanobind; run scripts/setup)")
  return()
endif()
set(FP8FLOW_HAVE_PYTHON ON)
message(STATUS "fp8flow: Python module fp8flow._core on (${Python_EXECUTABLE}, nanobind ${nanobind_VERSION})")
nanobind_add_module(fp8flow_python NB_STATIC ${CMAKE_SOURCE_DIR}/python/src/fp8flow_core.cpp)
set_target_properties(fp8flow_python PROPERTIES OUTPUT_NAME _core
                      LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/python/fp8flow)
target_link_libraries(fp8flow_python PRIVATE fp8flow_lib)
# The module links the static libraries into a shared object: they are compiled position-independent in a
# build that makes the module (a clean build with nanobind in .venv failed to link the PIE objects of
# libfp8flow.a: "relocation R_X86_64_PC32 ... recompile with -fPIC").
foreach(t fp8flow_lib)
  if(TARGET ${t})
    set_target_properties(${t} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  endif()
endforeach()
# The package's Python files beside the module, refreshed on every build (cheap), so that
# PYTHONPATH=build/python imports what was just built.
add_custom_target(fp8flow_python_files ALL
                  COMMAND ${CMAKE_COMMAND} -E copy_directory ${CMAKE_SOURCE_DIR}/python/fp8flow
                          ${CMAKE_BINARY_DIR}/python/fp8flow
                  COMMENT "fp8flow: Python package files -> ${CMAKE_BINARY_DIR}/python/fp8flow")
add_dependencies(fp8flow_python fp8flow_python_files)
if(SKBUILD)
  install(TARGETS fp8flow_python LIBRARY DESTINATION fp8flow COMPONENT python)
endif()
