// The backend registry: the one place that knows every backend. create_backend() (declared in
// reactor/backend.h) is implemented here.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace reactor {

struct BackendInfo {
  std::string name;
  bool available = false;
  std::string reason;  // why not, when unavailable
};

// Every backend this build knows, probed on the calling thread.
std::vector<BackendInfo> list_backends();

}  // namespace reactor
