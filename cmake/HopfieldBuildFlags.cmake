# hopfield_build_flags: one INTERFACE target with the warnings, sanitizers and
# ISA flags for our own code. Every target of ours links it PRIVATE; nothing
# goes into the global CMAKE_CXX_FLAGS.
add_library(hopfield_build_flags INTERFACE)
target_compile_options(hopfield_build_flags INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
  $<$<CONFIG:Debug>:-D_GLIBCXX_ASSERTIONS>)
if(HOPFIELD_WERROR)
  target_compile_options(hopfield_build_flags INTERFACE -Werror)
endif()
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  target_compile_options(hopfield_build_flags INTERFACE -Wthread-safety)
endif()

# Stricter conversions for the engine, where index bugs hide (size_t vs
# Eigen::Index vs int).
add_library(hopfield_strict_flags INTERFACE)
target_compile_options(hopfield_strict_flags INTERFACE -Wconversion -Wsign-conversion)

# A plain if(): the comma in "address,undefined" breaks $<BOOL:...>.
if(HOPFIELD_SANITIZE)
  target_compile_options(hopfield_build_flags INTERFACE
    -fsanitize=${HOPFIELD_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(hopfield_build_flags INTERFACE -fsanitize=${HOPFIELD_SANITIZE})
endif()

# Dense retrieval is bandwidth- and FMA-bound. Debian's baseline (SSE2) leaves
# half the machine idle, so build for x86-64-v3 (AVX2+FMA) when the build
# machine has it. AVX-512 (-march=native on Zen 4) measured slower in Eigen's
# GEMM than AVX2 here, so 'auto' stops at v3. Set HOPFIELD_ARCH=none for a
# binary that runs on any x86-64.
set(_hopfield_march "")
if(HOPFIELD_ARCH STREQUAL "auto")
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64" AND EXISTS /proc/cpuinfo)
    file(READ /proc/cpuinfo _cpuinfo)
    if(_cpuinfo MATCHES " avx2" AND _cpuinfo MATCHES " fma" AND _cpuinfo MATCHES " bmi2")
      set(_hopfield_march "x86-64-v3")
    endif()
  endif()
elseif(NOT HOPFIELD_ARCH STREQUAL "none" AND NOT HOPFIELD_ARCH STREQUAL "")
  set(_hopfield_march "${HOPFIELD_ARCH}")
endif()
if(_hopfield_march)
  message(STATUS "hopfield: building for -march=${_hopfield_march}")
  target_compile_options(hopfield_build_flags INTERFACE -march=${_hopfield_march})
else()
  message(STATUS "hopfield: building for the compiler's default ISA")
endif()
