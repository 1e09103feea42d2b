#include "perf/load/protocol.h"

#include <array>
#include <cstring>

namespace reactor::load {
namespace {

// Echo payload: byte p of connection c's stream is kPattern[(p + c * kStride) % kPatternSize], a
// pseudo-random table of prime length, so that a lost, repeated or reordered chunk is caught.
constexpr size_t kPatternSize = 65521;
constexpr size_t kStride = 7919;

const std::array<char, kPatternSize>& pattern() {
  static const std::array<char, kPatternSize> table = [] {
    std::array<char, kPatternSize> t{};
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (char& c : t) {
      x ^= x << 13;  // xorshift64
      x ^= x >> 7;
      x ^= x << 17;
      c = static_cast<char>(x >> 56);
    }
    return t;
  }();
  return table;
}

class EchoProtocol final : public Protocol {
 public:
  EchoProtocol(size_t size, uint32_t id)
      : size_(size == 0 ? 1 : size),
        offset_((static_cast<uint64_t>(id) * kStride) % kPatternSize) {}

  void append_request(std::string& out) override {
    const auto& p = pattern();
    size_t left = size_;
    while (left > 0) {
      const size_t at = (offset_ + sent_) % kPatternSize;
      const size_t n = std::min(left, kPatternSize - at);
      out.append(p.data() + at, n);
      sent_ += n;
      left -= n;
    }
  }

  int64_t consume(const char* data, size_t n) override {
    if (received_ + n > sent_) {
      error_ = "echo: received more bytes than were sent";
      return -1;
    }
    const auto& p = pattern();
    const uint64_t before = received_ / size_;
    size_t done = 0;
    while (done < n) {
      const size_t at = (offset_ + received_) % kPatternSize;
      const size_t len = std::min(n - done, kPatternSize - at);
      if (std::memcmp(data + done, p.data() + at, len) != 0) {
        size_t i = 0;
        while (data[done + i] == p[at + i]) ++i;
        error_ = "echo: byte " + std::to_string(received_ + i) + " of the stream differs";
        return -1;
      }
      done += len;
      received_ += len;
      verified_ += len;
    }
    return static_cast<int64_t>(received_ / size_ - before);
  }

 private:
  const size_t size_;
  const uint64_t offset_;
  uint64_t sent_ = 0;
  uint64_t received_ = 0;
};

class RespPingProtocol final : public Protocol {
 public:
  void append_request(std::string& out) override { out.append("*1\r\n$4\r\nPING\r\n"); }

  int64_t consume(const char* data, size_t n) override {
    static constexpr std::string_view kReply = "+PONG\r\n";
    int64_t complete = 0;
    for (size_t i = 0; i < n; ++i) {
      if (data[i] != kReply[at_]) {
        const size_t end = std::min(n, i + 64);
        error_ = "resp: expected +PONG, got '" + std::string(data + i, end - i) + "'";
        return -1;
      }
      ++verified_;
      if (++at_ == kReply.size()) {
        at_ = 0;
        ++complete;
      }
    }
    return complete;
  }

 private:
  size_t at_ = 0;
};

class HttpGetProtocol final : public Protocol {
 public:
  HttpGetProtocol(const std::string& host, const std::string& path)
      : request_("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n") {}

  void append_request(std::string& out) override { out.append(request_); }

  int64_t consume(const char* data, size_t n) override {
    int64_t complete = 0;
    size_t i = 0;
    while (i < n) {
      if (body_left_ > 0) {
        const size_t take = std::min<uint64_t>(body_left_, n - i);
        body_left_ -= take;
        i += take;
        response_bytes_ += take;
        if (body_left_ == 0) {
          verified_ += response_bytes_;
          response_bytes_ = 0;
          ++complete;
        }
        continue;
      }
      // Header section: collect up to the blank line.
      const char c = data[i++];
      head_.push_back(c);
      if (head_.size() > 16384) {
        error_ = "http: response header section above 16 KiB";
        return -1;
      }
      if (c != '\n' || !head_.ends_with("\r\n\r\n")) continue;
      if (!parse_head()) return -1;
      response_bytes_ = head_.size();
      head_.clear();
      if (body_left_ == 0) {
        verified_ += response_bytes_;
        response_bytes_ = 0;
        ++complete;
      }
    }
    return complete;
  }

 private:
  bool parse_head() {
    if (!head_.starts_with("HTTP/1.1 200 ") && !head_.starts_with("HTTP/1.0 200 ")) {
      error_ = "http: expected status 200, got '" + head_.substr(0, head_.find('\r')) + "'";
      return false;
    }
    // Content-Length, case-insensitively.
    size_t pos = head_.find("\r\n");
    bool found = false;
    while (pos != std::string::npos && pos + 2 < head_.size()) {
      const size_t start = pos + 2;
      const size_t end = head_.find("\r\n", start);
      const std::string_view line(head_.data() + start, end - start);
      pos = end;
      constexpr std::string_view kName = "content-length:";
      if (line.size() < kName.size()) continue;
      bool match = true;
      for (size_t k = 0; k < kName.size(); ++k) {
        char l = line[k];
        if (l >= 'A' && l <= 'Z') l = static_cast<char>(l - 'A' + 'a');
        if (l != kName[k]) match = false;
      }
      if (!match) continue;
      uint64_t v = 0;
      size_t k = kName.size();
      while (k < line.size() && line[k] == ' ') ++k;
      if (k == line.size()) break;
      for (; k < line.size() && line[k] >= '0' && line[k] <= '9'; ++k) v = v * 10 + (line[k] - '0');
      found = k == line.size();
      body_left_ = v;
      break;
    }
    if (!found) {
      error_ = "http: response without a valid Content-Length";
      return false;
    }
    if (head_.find("\r\nConnection: close\r\n") != std::string::npos) {
      error_ = "http: the server closes the connection (Connection: close)";
      return false;
    }
    return true;
  }

  const std::string request_;
  std::string head_;
  uint64_t body_left_ = 0;
  uint64_t response_bytes_ = 0;
};

}  // namespace

bool parse_mode(std::string_view s, Mode* mode) {
  if (s == "echo") {
    *mode = Mode::kEcho;
  } else if (s == "http") {
    *mode = Mode::kHttp;
  } else if (s == "resp") {
    *mode = Mode::kResp;
  } else {
    return false;
  }
  return true;
}

const char* mode_name(Mode mode) {
  switch (mode) {
    case Mode::kEcho:
      return "echo";
    case Mode::kHttp:
      return "http";
    case Mode::kResp:
      return "resp";
  }
  return "?";
}

std::unique_ptr<Protocol> Protocol::create(const ProtocolOptions& options, uint32_t id) {
  switch (options.mode) {
    case Mode::kEcho:
      return std::make_unique<EchoProtocol>(options.size, id);
    case Mode::kHttp:
      return std::make_unique<HttpGetProtocol>(options.host, options.path);
    case Mode::kResp:
      return std::make_unique<RespPingProtocol>();
  }
  return nullptr;
}

}  // namespace reactor::load
