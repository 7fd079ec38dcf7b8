// A one-line progress bar with ETA for long sweeps: "[#######.......]  12/40 runs  0:41 elapsed  ETA 1:35".
// Drawn on stdout only when it is a terminal and not --quiet; otherwise silent (logs stay clean).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

namespace fp8flow::io {

class Progress {
 public:
  // `skipped` runs (already complete) count as done but not toward the ETA's rate.
  // `unit`: what is counted ("runs"; `fp8flow train` counts training steps).
  Progress(std::size_t total, std::size_t skipped, bool quiet, std::string unit = "runs");
  ~Progress();  // ends the line if one was drawn
  void update(std::size_t done_now);  // runs finished in this process so far
  void finish();
  bool enabled() const { return enabled_; }
  // The text of the bar (without '\r'), for tests.
  static std::string render(std::size_t done, std::size_t total, double elapsed_s, double eta_s, int width,
                            std::string_view unit = "runs");

 private:
  std::size_t total_, skipped_;
  std::string unit_;
  bool enabled_, drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_{};
};

std::string format_duration(double seconds);  // 75 -> "1:15", 3700 -> "1:01:40"

}  // namespace fp8flow::io
