// Counts operator calls through libtorch's dispatcher with a global RecordFunction callback (the
// hook libtorch's profiler uses). "Top-level" calls are those made while no other counted call
// is running on the same thread: the calls a caller (tch, the autograd engine) makes, not the
// ones an operator makes inside itself.
#include <ATen/record_function.h>

#include <atomic>
#include <cstdint>
#include <memory>

namespace {

std::atomic<uint64_t> top_level{0};
std::atomic<uint64_t> all_calls{0};
thread_local int depth = 0;
at::CallbackHandle handle = 0;

std::unique_ptr<at::ObserverContext> on_enter(const at::RecordFunction&) {
  if (depth == 0) {
    top_level.fetch_add(1, std::memory_order_relaxed);
  }
  all_calls.fetch_add(1, std::memory_order_relaxed);
  ++depth;
  return nullptr;
}

void on_exit(const at::RecordFunction&, at::ObserverContext*) { --depth; }

}  // namespace

extern "C" {

// Starts counting from zero; 0 on success, -1 when libtorch refused the callback.
int effnas_opcount_start() {
  try {
    if (handle == 0) {
      handle = at::addGlobalCallback(
          at::RecordFunctionCallback(on_enter, on_exit).scopes({at::RecordScope::FUNCTION}));
    }
    top_level = 0;
    all_calls = 0;
    return 0;
  } catch (...) {
    return -1;
  }
}

void effnas_opcount_read(uint64_t* top, uint64_t* all) {
  *top = top_level.load();
  *all = all_calls.load();
}

void effnas_opcount_stop() {
  if (handle != 0) {
    at::removeCallback(handle);
    handle = 0;
  }
}
}
