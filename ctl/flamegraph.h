// Flame graphs for reactorctl: stacks folded with their weights (the text format flamegraph.pl,
// speedscope and inferno read: `root;caller;callee WEIGHT` per line) and a self-contained SVG
// drawn from them — one rectangle per frame, as wide as its share of the total, with a hover
// <title> giving its weight, sample count and percentage; no script, no external file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nlohmann/json.hpp"

namespace reactord::ctl {

// One stack, root first, with its total weight and how many samples (stalls, ...) it adds up.
struct FoldedStack {
  std::vector<std::string> frames;
  uint64_t weight = 0;
  uint64_t samples = 0;
};

// The `stalls` answer's kept reports folded by stack and weighted by stall time in milliseconds:
// each stack's root is the stalled fiber's name without its "#N" (so a service's connections add
// up), then its frames from the outermost to the innermost. A report without frames counts under
// "[no frames]". Heaviest first, then by stack.
std::vector<FoldedStack> fold_stall_reports(const nlohmann::json& stalls);

// `frame;frame;... WEIGHT` lines, one per stack (';' inside a frame becomes ':').
std::string folded_text(const std::vector<FoldedStack>& stacks);

struct FlameGraphOptions {
  std::string title = "flame graph";
  std::string unit = "ms";             // of the weights
  std::string sample_noun = "stalls";  // what a sample is, in the hover titles
  int width = 1200;
};

// The SVG document (XML, UTF-8). An empty input draws the title and "no samples".
std::string flame_graph_svg(const std::vector<FoldedStack>& stacks, const FlameGraphOptions& o);

}  // namespace reactord::ctl
