# Precompiled headers (option REACTOR_PCH, on by default).
#
# Most of each file's compile time goes to the same headers: a typical file here preprocesses to
# about 100,000 lines, of which absl/status/statusor.h alone brings 79,000 and GoogleTest with
# gMock another 88,000. Two precompiled headers are built once per build tree and reused by every
# C++ target (REUSE_FROM): reactor_pch (the standard library and the Abseil headers the runtime's
# interfaces use) for the code, test_pch (that plus GoogleTest, gMock and nlohmann::json) for
# every target that links GoogleTest. They only speed the build: each file still includes what it
# uses, and the Debian package build (debian/rules) compiles without them, so a missing include
# in the shipped code still fails there.

option(REACTOR_PCH "Build with precompiled headers (faster; every file still includes what it uses)"
  ON)

set(REACTOR_PCH_HEADERS
  <algorithm> <atomic> <chrono> <cstddef> <cstdint> <cstring> <functional> <map> <memory>
  <mutex> <optional> <span> <string> <string_view> <thread> <unordered_map> <utility> <vector>
  [["absl/functional/any_invocable.h"]] [["absl/status/status.h"]]
  [["absl/status/statusor.h"]] [["absl/strings/str_cat.h"]])

# The C++ targets defined in DIR and below, into OUT.
function(reactor_pch_collect dir out)
  get_property(found DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  foreach(sub IN LISTS subdirs)
    reactor_pch_collect(${sub} below)
    list(APPEND found ${below})
  endforeach()
  set(${out} ${found} PARENT_SCOPE)
endfunction()

# Called once at the end of the top-level CMakeLists.txt, after every target exists. A target
# whose flags would make the shared header unusable (a -D it was not built with: gcc then refuses
# it, an error under -Werror) sets DISABLE_PRECOMPILE_HEADERS and is left alone.
function(reactor_apply_pch)
  reactor_pch_collect(${PROJECT_SOURCE_DIR} targets)
  # REACTOR_TEST_COMPILE_OPTIONS (CMakeLists.txt) for every target that links GoogleTest, and
  # test_pch below, which they share.
  if(REACTOR_TEST_COMPILE_OPTIONS)
    foreach(target IN LISTS targets)
      get_target_property(libs ${target} LINK_LIBRARIES)
      if(libs MATCHES "GTest::")
        target_compile_options(${target} PRIVATE ${REACTOR_TEST_COMPILE_OPTIONS})
      endif()
    endforeach()
  endif()
  if(NOT REACTOR_PCH)
    return()
  endif()
  file(WRITE ${PROJECT_BINARY_DIR}/pch_empty.cc "// The precompiled headers' own source file.\n")
  add_library(reactor_pch OBJECT ${PROJECT_BINARY_DIR}/pch_empty.cc)
  target_link_libraries(reactor_pch PRIVATE absl::status absl::statusor absl::strings
    absl::any_invocable)
  target_precompile_headers(reactor_pch PRIVATE ${REACTOR_PCH_HEADERS})
  if(REACTOR_BUILD_TESTS)
    find_package(GTest REQUIRED)
    find_package(nlohmann_json REQUIRED)
    add_library(test_pch OBJECT ${PROJECT_BINARY_DIR}/pch_empty.cc)
    target_link_libraries(test_pch PRIVATE absl::status absl::statusor absl::strings
      absl::any_invocable GTest::gtest GTest::gmock nlohmann_json::nlohmann_json)
    target_precompile_headers(test_pch PRIVATE ${REACTOR_PCH_HEADERS}
      [["gmock/gmock.h"]] [["gtest/gtest.h"]] [["nlohmann/json.hpp"]])
    target_compile_options(test_pch PRIVATE ${REACTOR_TEST_COMPILE_OPTIONS})
  endif()
  foreach(target IN LISTS targets)
    get_target_property(type ${target} TYPE)
    get_target_property(sources ${target} SOURCES)
    get_target_property(libs ${target} LINK_LIBRARIES)
    get_target_property(disabled ${target} DISABLE_PRECOMPILE_HEADERS)
    if(NOT type MATCHES "^(STATIC_LIBRARY|OBJECT_LIBRARY|SHARED_LIBRARY|EXECUTABLE)$" OR
       target MATCHES "^(reactor_pch|test_pch)$" OR NOT sources MATCHES "\\.cc(;|$)" OR disabled)
      continue()
    endif()
    if(TARGET test_pch AND libs MATCHES "GTest::")
      target_precompile_headers(${target} REUSE_FROM test_pch)
    else()
      target_precompile_headers(${target} REUSE_FROM reactor_pch)
    endif()
  endforeach()
endfunction()
