#include "ctl/flamegraph.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace reactord::ctl {
namespace {

using Json = nlohmann::json;

constexpr int kFrameHeight = 16;
constexpr int kTop = 40;  // room for the title
constexpr int kBottom = 10;
constexpr double kCharWidth = 7.0;  // of the 12 px monospace labels

std::string fiber_root(const std::string& fiber) {
  return fiber.substr(0, fiber.find('#'));
}

std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        // XML 1.0 allows no control characters but tab, newline and carriage return.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') {
          out += '?';
        } else {
          out += c;
        }
    }
  }
  return out;
}

// The frames as one call tree: children by name, in name order (so equal inputs draw alike).
struct Node {
  uint64_t weight = 0;
  uint64_t samples = 0;
  std::map<std::string, std::unique_ptr<Node>> children;
};

// A warm colour from the frame's name, stable across runs.
std::string colour(std::string_view name) {
  uint32_t h = 2166136261u;
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  const int r = 205 + static_cast<int>(h % 50);
  const int g = 80 + static_cast<int>((h >> 8) % 130);
  const int b = 30 + static_cast<int>((h >> 16) % 40);
  return absl::StrFormat("rgb(%d,%d,%d)", r, g, b);
}

struct Drawing {
  const FlameGraphOptions& o;
  double scale;  // pixels per unit of weight
  uint64_t total;
  int height;
  std::string out;

  void draw(const std::string& name, const Node& n, double x, int depth) {
    const double w = static_cast<double>(n.weight) * scale;
    if (w < 0.1) return;  // too thin to see or hover
    const int y = height - kBottom - (depth + 1) * kFrameHeight;
    const double pct = 100.0 * static_cast<double>(n.weight) / static_cast<double>(total);
    absl::StrAppend(&out, "<g><title>", xml_escape(name), " (", n.weight, " ", xml_escape(o.unit),
                    ", ", n.samples, " ", xml_escape(o.sample_noun), ", ",
                    absl::StrFormat("%.2f", pct), "%)</title>");
    absl::StrAppend(
        &out, absl::StrFormat("<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\" "
                              "rx=\"2\" ry=\"2\"/>",
                              x, y, w, kFrameHeight - 1, colour(name)));
    const size_t fits = static_cast<size_t>(std::max(0.0, (w - 6) / kCharWidth));
    if (fits >= 3) {
      std::string label = name.size() <= fits ? name : name.substr(0, fits - 2) + "..";
      absl::StrAppend(&out, absl::StrFormat("<text x=\"%.1f\" y=\"%d\">", x + 3, y + 12),
                      xml_escape(label), "</text>");
    }
    out += "</g>\n";
    double cx = x;
    for (const auto& [child_name, child] : n.children) {
      draw(child_name, *child, cx, depth + 1);
      cx += static_cast<double>(child->weight) * scale;
    }
  }
};

int depth_of(const Node& n) {
  int d = 0;
  for (const auto& [name, c] : n.children) d = std::max(d, 1 + depth_of(*c));
  return d;
}

}  // namespace

std::vector<FoldedStack> fold_stall_reports(const Json& stalls) {
  std::map<std::vector<std::string>, FoldedStack> by_stack;
  const Json* reports =
      stalls.is_object() && stalls.contains("reports") ? &stalls["reports"] : nullptr;
  if (reports == nullptr || !reports->is_array()) return {};
  for (const Json& r : *reports) {
    if (!r.is_object()) continue;
    std::vector<std::string> frames;
    const Json fiber = r.value("fiber", Json());
    frames.push_back(fiber_root(fiber.is_string() ? fiber.get<std::string>() : "?"));
    const Json stack = r.value("frames", Json::array());
    if (stack.is_array() && !stack.empty()) {
      for (auto it = stack.rbegin(); it != stack.rend(); ++it) {
        frames.push_back(it->is_string() ? it->get<std::string>() : "?");
      }
    } else {
      frames.push_back("[no frames]");
    }
    const Json wall = r.value("wall_seconds", Json(0.0));
    const double seconds = wall.is_number() ? wall.get<double>() : 0.0;
    FoldedStack& f = by_stack[frames];
    f.frames = frames;
    f.weight += static_cast<uint64_t>(std::llround(std::max(0.0, seconds) * 1000.0));
    f.samples += 1;
  }
  std::vector<FoldedStack> out;
  for (auto& [k, f] : by_stack) out.push_back(std::move(f));
  std::stable_sort(out.begin(), out.end(),
                   [](const FoldedStack& a, const FoldedStack& b) { return a.weight > b.weight; });
  return out;
}

std::string folded_text(const std::vector<FoldedStack>& stacks) {
  std::string out;
  for (const FoldedStack& s : stacks) {
    std::vector<std::string> frames;
    for (std::string f : s.frames) {
      std::replace(f.begin(), f.end(), ';', ':');
      std::replace(f.begin(), f.end(), '\n', ' ');
      frames.push_back(std::move(f));
    }
    absl::StrAppend(&out, absl::StrJoin(frames, ";"), " ", s.weight, "\n");
  }
  return out;
}

std::string flame_graph_svg(const std::vector<FoldedStack>& stacks, const FlameGraphOptions& o) {
  Node root;
  for (const FoldedStack& s : stacks) {
    root.weight += s.weight;
    root.samples += s.samples;
    Node* n = &root;
    for (const std::string& f : s.frames) {
      std::unique_ptr<Node>& c = n->children[f];
      if (!c) c = std::make_unique<Node>();
      c->weight += s.weight;
      c->samples += s.samples;
      n = c.get();
    }
  }
  const int width = std::max(200, o.width);
  const int depth = depth_of(root) + 1;  // "all" at the bottom
  const int height = kTop + depth * kFrameHeight + kBottom;
  Drawing d{o, root.weight == 0 ? 0.0 : (width - 20.0) / static_cast<double>(root.weight),
            std::max<uint64_t>(root.weight, 1), height, ""};
  std::string svg = absl::StrFormat(
      "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
      "<svg version=\"1.1\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
      "viewBox=\"0 0 %d %d\">\n"
      "<style>text{font-family:monospace;font-size:12px;fill:#000;pointer-events:none}"
      "rect:hover{stroke:#000;stroke-width:1}</style>\n"
      "<rect x=\"0\" y=\"0\" width=\"100%%\" height=\"100%%\" fill=\"#fdf6ee\"/>\n",
      width, height, width, height);
  absl::StrAppend(&svg,
                  absl::StrFormat("<text x=\"%d\" y=\"24\" text-anchor=\"middle\" ", width / 2),
                  "style=\"font-size:16px\">", xml_escape(o.title), "</text>\n");
  if (root.weight == 0) {
    absl::StrAppend(
        &svg,
        absl::StrFormat("<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", width / 2, kTop + 12),
        "no samples</text>\n</svg>\n");
    return svg;
  }
  d.draw("all", root, 10.0, 0);
  absl::StrAppend(&svg, d.out, "</svg>\n");
  return svg;
}

}  // namespace reactord::ctl
