# hopfield_cc_test(NAME n SRCS ... DEPS ... [LABELS ...] [ENVIRONMENT ...])
# One call per test file: builds it, links gmock_main and the build flags, and
# registers every TEST with ctest (discovered when ctest runs, so sanitizer
# builds don't run binaries at build time).
function(hopfield_cc_test)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS;LABELS;ENVIRONMENT" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gmock_main hopfield_build_flags)
  gtest_discover_tests(${ARG_NAME}
    DISCOVERY_MODE PRE_TEST
    DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS "${ARG_LABELS}" ENVIRONMENT "${ARG_ENVIRONMENT}")
endfunction()

# hopfield_cc_benchmark(NAME n SRCS ... DEPS ... [ARGS ...])
# A Google Benchmark program registered as a ctest with LABELS benchmark; the
# ctest run is a smoke run (tiny min time), real numbers come from running the
# binary (see bench/README.md).
function(hopfield_cc_benchmark)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS;ARGS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} benchmark::benchmark hopfield_build_flags)
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_NAME} --benchmark_min_time=0.01 ${ARG_ARGS})
  set_tests_properties(${ARG_NAME} PROPERTIES LABELS benchmark)
endfunction()
