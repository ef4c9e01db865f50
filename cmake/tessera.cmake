# SPDX-License-Identifier: Apache-2.0
# Shared helpers: every module's CMakeLists.txt calls these and nothing else.

find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

# ts_module(NAME SOURCES a.c b.c DEPS other_module PKGS libisal ...)
# Builds a static library ts_<NAME>. The source root is on the include path so
# code includes "dataplane/pem/pem.h" style paths.
function(ts_module name)
  cmake_parse_arguments(M "" "" "SOURCES;DEPS;PKGS;LIBS" ${ARGN})
  add_library(ts_${name} STATIC ${M_SOURCES})
  target_include_directories(ts_${name} PUBLIC ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}/gen)
  foreach(p IN LISTS M_PKGS)
    ts_pkg(${p})
    target_link_libraries(ts_${name} PUBLIC PkgConfig::${p})
  endforeach()
  foreach(d IN LISTS M_DEPS)
    target_link_libraries(ts_${name} PUBLIC ts_${d})
  endforeach()
  target_link_libraries(ts_${name} PUBLIC Threads::Threads ${M_LIBS})
endfunction()

# ts_pkg(libisal): imported target PkgConfig::libisal, found once.
function(ts_pkg p)
  if(NOT TARGET PkgConfig::${p})
    pkg_check_modules(${p} REQUIRED IMPORTED_TARGET GLOBAL ${p})
  endif()
endfunction()

# ts_executable(NAME SOURCES ... DEPS ...): a program in build/bin.
function(ts_executable name)
  cmake_parse_arguments(M "" "" "SOURCES;DEPS;PKGS;LIBS" ${ARGN})
  add_executable(${name} ${M_SOURCES})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}/gen)
  foreach(p IN LISTS M_PKGS)
    ts_pkg(${p})
    target_link_libraries(${name} PRIVATE PkgConfig::${p})
  endforeach()
  foreach(d IN LISTS M_DEPS)
    target_link_libraries(${name} PRIVATE ts_${d})
  endforeach()
  target_link_libraries(${name} PRIVATE Threads::Threads ${M_LIBS})
endfunction()

# ts_unit_test(NAME SOURCES ... DEPS ... [TIMEOUT s]): a Criterion suite run by ctest.
function(ts_unit_test name)
  cmake_parse_arguments(M "" "TIMEOUT" "SOURCES;DEPS;PKGS;LIBS" ${ARGN})
  ts_pkg(criterion)
  set(exe unit_${name})
  add_executable(${exe} ${M_SOURCES})
  set_target_properties(${exe} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/unit)
  target_include_directories(${exe} PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}/gen)
  target_link_libraries(${exe} PRIVATE PkgConfig::criterion Threads::Threads ${M_LIBS})
  foreach(p IN LISTS M_PKGS)
    ts_pkg(${p})
    target_link_libraries(${exe} PRIVATE PkgConfig::${p})
  endforeach()
  foreach(d IN LISTS M_DEPS)
    target_link_libraries(${exe} PRIVATE ts_${d})
  endforeach()
  if(NOT M_TIMEOUT)
    set(M_TIMEOUT 300)
  endif()
  # -j1: Criterion forks per test; ctest already runs suites in parallel.
  add_test(NAME unit/${name} COMMAND ${exe} -j1 --ascii)
  set_tests_properties(unit/${name} PROPERTIES TIMEOUT ${M_TIMEOUT} LABELS unit)
endfunction()
