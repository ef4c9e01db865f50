# SPDX-License-Identifier: Apache-2.0
# clang-tidy over every project source in ${BUILD}/compile_commands.json whose
# path is under one of ${DIRS} (relative to ${SRC}); fails on any finding.
# Run by the `check` target: cmake -DTIDY=.. -DBUILD=.. -DSRC=.. -DDIRS=a,b -P clang_tidy.cmake
string(REPLACE "," ";" DIRS "${DIRS}")
file(READ ${BUILD}/compile_commands.json db)
string(JSON n LENGTH "${db}")
math(EXPR last "${n} - 1")
set(files)
foreach(i RANGE ${last})
  string(JSON f GET "${db}" ${i} file)
  foreach(d IN LISTS DIRS)
    if(f MATCHES "^${SRC}/${d}/")
      list(APPEND files ${f})
    endif()
  endforeach()
endforeach()
list(REMOVE_DUPLICATES files)
list(LENGTH files nf)
message(STATUS "clang-tidy: ${nf} files")
execute_process(COMMAND ${TIDY} -p ${BUILD} --quiet ${files}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "clang-tidy found problems (exit ${rc})")
endif()
