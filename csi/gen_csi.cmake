# SPDX-License-Identifier: Apache-2.0
# Build-time generation of the CSI protobuf C code (run with cmake -P).
#
# Inputs (-D): GO, PROTOC_C, OUT, MODCACHE, VERSION.
# 1. `go mod download -json github.com/container-storage-interface/spec@VERSION`
#    fetches the pinned spec module through the Go module proxy (checksums
#    verified against sum.golang.org). GOMODCACHE comes from the environment
#    or, failing that, MODCACHE in the build tree; -modcacherw keeps that tree
#    deletable; GOTOOLCHAIN=local forbids toolchain downloads.
# 2. protoc-c compiles its csi.proto together with the well-known protos that
#    Debian's libprotobuf-dev installs under /usr/include/google/protobuf.
set(mod github.com/container-storage-interface/spec@${VERSION})
set(env_args GOFLAGS=-mod=mod\ -modcacherw GOTOOLCHAIN=local)
if(DEFINED ENV{GOMODCACHE} AND NOT "$ENV{GOMODCACHE}" STREQUAL "")
  list(APPEND env_args GOMODCACHE=$ENV{GOMODCACHE})
elseif(NOT DEFINED ENV{HOME} OR "$ENV{HOME}" STREQUAL "")
  list(APPEND env_args GOMODCACHE=${MODCACHE} GOPATH=${MODCACHE}/gopath)
else()
  execute_process(COMMAND ${GO} env GOMODCACHE OUTPUT_VARIABLE gmc
                  OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE r)
  if(NOT r EQUAL 0 OR gmc STREQUAL "")
    list(APPEND env_args GOMODCACHE=${MODCACHE})
  endif()
endif()
file(MAKE_DIRECTORY ${MODCACHE})
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env ${env_args} ${GO} mod download -json ${mod}
  WORKING_DIRECTORY ${MODCACHE}
  OUTPUT_VARIABLE json ERROR_VARIABLE err RESULT_VARIABLE r)
if(NOT r EQUAL 0)
  message(FATAL_ERROR "go mod download ${mod} failed: ${err}${json}")
endif()
string(JSON dir GET "${json}" Dir)
if(NOT EXISTS ${dir}/csi.proto)
  message(FATAL_ERROR "no csi.proto in ${dir}")
endif()
set(wkt /usr/include)
foreach(p descriptor timestamp wrappers)
  if(NOT EXISTS ${wkt}/google/protobuf/${p}.proto)
    message(FATAL_ERROR "missing ${wkt}/google/protobuf/${p}.proto (install libprotobuf-dev)")
  endif()
endforeach()
file(MAKE_DIRECTORY ${OUT})
execute_process(
  COMMAND ${PROTOC_C} --c_out=${OUT} -I${dir} -I${wkt} ${dir}/csi.proto
          ${wkt}/google/protobuf/descriptor.proto ${wkt}/google/protobuf/timestamp.proto
          ${wkt}/google/protobuf/wrappers.proto
  RESULT_VARIABLE r ERROR_VARIABLE err)
if(NOT r EQUAL 0)
  message(FATAL_ERROR "protoc-c failed: ${err}")
endif()
