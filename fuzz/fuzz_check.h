// FUZZ_CHECK(cond, what): a property every input must keep. Unlike assert() it holds in every
// build, and a failure aborts, which libFuzzer reports as a crash and saves the input.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond, what)                                                                     \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: %s\n", __FILE__, __LINE__, #cond, what); \
      std::abort();                                                                                \
    }                                                                                              \
  } while (0)

namespace reactord::fuzz {

// The chunk lengths to feed an input in, taken from the input itself so a crash reproduces:
// at offset i the next chunk is 1 + data[i] % 17 bytes long.
inline size_t chunk_at(const unsigned char* data, size_t size, size_t i) {
  const size_t n = 1 + data[i] % 17;
  return n < size - i ? n : size - i;
}

}  // namespace reactord::fuzz
