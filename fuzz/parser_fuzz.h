// The driver the parser fuzzers share: one input fed to a fresh parser at once and in small
// chunks must give the same result, and the bytes the parser returned plus the bytes it still
// buffers must account for the input.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "fuzz/fuzz_check.h"

namespace reactord::fuzz {

// How Run::wire (bytes of the returned requests or commands) plus Run::buffered relate to the
// bytes fed, when the parser did not fail.
enum class Accounting {
  kExact,   // they are every byte fed
  kAtMost,  // they are at most the bytes fed: bytes skipped after the last item (RESP's empty
            // commands) are counted with the next one
};

// Runs `input` through Parser(limits) three times, at once, in the chunks chunk_at() picks (feed()
// and prepare()/commit() alternately, the latter with room to spare) and in the same chunks
// parsed in place (parse_in_place, settle() before each next one), calling
// drain(parser, limits, run) after each step until it returns false (the parser failed). Checks
// the accounting of the run at once and that all runs are equal (`same` says what that means).
// Run: default-constructible, equality-comparable, with size_t members wire and buffered.
template <class Parser, class Run, class Limits, class Drain>
void check_chunking(std::string_view input, const Limits& limits, Drain drain,
                    Accounting accounting, const char* same) {
  Run whole;
  {
    Parser p(limits);
    p.feed(input);
    if (drain(p, limits, whole)) {
      whole.buffered = p.buffered();
      if (accounting == Accounting::kExact) {
        FUZZ_CHECK(whole.wire + whole.buffered == input.size(), "every byte is accounted for");
      } else {
        FUZZ_CHECK(whole.wire + whole.buffered <= input.size(), "no byte is counted twice");
      }
    }
  }
  Run chunked;
  {
    Parser p(limits);
    const auto* data = reinterpret_cast<const unsigned char*>(input.data());
    bool failed = false;
    for (size_t i = 0; i < input.size() && !failed;) {
      const size_t n = chunk_at(data, input.size(), i);
      if (i % 2 == 0) {
        p.feed(input.substr(i, n));
      } else {
        std::span<char> room = p.prepare(n + 7);
        std::copy(data + i, data + i + n, room.begin());
        p.commit(n);
      }
      i += n;
      failed = !drain(p, limits, chunked);
    }
    if (!failed) chunked.buffered = p.buffered();
  }
  FUZZ_CHECK(whole == chunked, same);
  // Once more in the same chunks, each lent (parse_in_place) as a backend lends its buffers: a
  // fresh allocation per chunk, freed after settle(), so that a view into one kept past it is a
  // use after free under AddressSanitizer.
  Run lent_run;
  {
    Parser p(limits);
    std::unique_ptr<char[]> lent;
    bool failed = false;
    for (size_t i = 0; i < input.size() && !failed;) {
      const size_t n =
          chunk_at(reinterpret_cast<const unsigned char*>(input.data()), input.size(), i);
      p.settle();
      lent = std::make_unique<char[]>(n);
      std::copy(input.data() + i, input.data() + i + n, lent.get());
      p.parse_in_place(std::string_view(lent.get(), n));
      i += n;
      failed = !drain(p, limits, lent_run);
    }
    if (!failed) lent_run.buffered = p.buffered();
  }
  FUZZ_CHECK(whole == lent_run, same);
}

}  // namespace reactord::fuzz
