# Shared build settings for the project's own targets.
# SPDX-License-Identifier: GPL-3.0-or-later

# nlohmann/json is header-only. Debian ships a CMake package; on machines without
# apt (a PyTorch-wheel GPU machine) point UNIBIOMED_JSON_INCLUDE_DIR at a folder
# holding nlohmann/json.hpp.
set(UNIBIOMED_JSON_INCLUDE_DIR "" CACHE PATH "Folder containing nlohmann/json.hpp when no CMake package is installed")
macro(unibiomed_find_json)
  find_package(nlohmann_json 3 QUIET)
  if(NOT nlohmann_json_FOUND)
    if(NOT UNIBIOMED_JSON_INCLUDE_DIR OR NOT EXISTS "${UNIBIOMED_JSON_INCLUDE_DIR}/nlohmann/json.hpp")
      message(FATAL_ERROR "nlohmann/json not found: install nlohmann-json3-dev or set UNIBIOMED_JSON_INCLUDE_DIR")
    endif()
    add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
    set_target_properties(nlohmann_json::nlohmann_json PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${UNIBIOMED_JSON_INCLUDE_DIR}")
  endif()
endmacro()

set(UNIBIOMED_SANITIZE_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)

# Applies warnings, sanitizers and the include root to one of our own targets.
# Third-party headers come in through imported targets and are therefore SYSTEM
# includes, so -Werror only ever fires on our code.
function(unibiomed_target_defaults target)
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(UNIBIOMED_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(UNIBIOMED_SANITIZE)
    target_compile_options(${target} PRIVATE ${UNIBIOMED_SANITIZE_FLAGS})
    target_link_options(${target} PUBLIC -fsanitize=address,undefined)
  endif()
endfunction()

# unibiomed_add_test(NAME name SOURCES ... LIBS ... [WHOLE_BINARY] [LABELS ...] [ARGS ...])
# Registers a GoogleTest binary with CTest. Binaries that link libtorch pay about
# a second per process start, so pass WHOLE_BINARY for them: the binary then runs
# as one CTest test instead of one process per test case. ARGS go to the binary
# (e.g. a --gtest_filter that leaves out what this build cannot run).
#
# A test that cannot make its check fails; only a case that has no business running
# here (e.g. real-tokenizer cases without the tokenizer files, which the project
# does not ship) calls GTEST_SKIP. Per-case tests (gtest_discover_tests) show such a
# case as "Skipped" in CTest's summary. A WHOLE_BINARY test has one result for all
# its cases, so a skipped case inside it, or a binary that ran no case at all, makes
# it fail: a skip can never hide inside a "passed" binary. (FAIL_REGULAR_EXPRESSION
# adds to the exit-status check; a non-zero exit still fails.)
set(UNIBIOMED_GTEST_SKIPPED_REGEX "\\[  SKIPPED \\]")
set(UNIBIOMED_GTEST_NONE_RAN_REGEX "\\[==========\\] 0 tests from")
function(unibiomed_add_test)
  cmake_parse_arguments(T "WHOLE_BINARY" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  unibiomed_target_defaults(${T_NAME})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main)
  target_compile_definitions(${T_NAME} PRIVATE UNIBIOMED_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
                                              UNIBIOMED_BINARY_DIR="${PROJECT_BINARY_DIR}")
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  if(T_WHOLE_BINARY)
    add_test(NAME ${T_NAME} COMMAND ${T_NAME} ${T_ARGS})
    set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
      FAIL_REGULAR_EXPRESSION "${UNIBIOMED_GTEST_SKIPPED_REGEX};${UNIBIOMED_GTEST_NONE_RAN_REGEX}")
  else()
    gtest_discover_tests(${T_NAME} DISCOVERY_TIMEOUT 60 EXTRA_ARGS ${T_ARGS}
      PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}")
  endif()
endfunction()
