#include "io/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace fp8flow::io {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<long long>(s + 0.5);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
  return fmt::format("{}:{:02}", t / 60, t % 60);
}

std::string Progress::render(std::size_t done, std::size_t total, double elapsed, double eta, int width,
                             std::string_view unit) {
  const std::size_t filled = total ? done * std::size_t(width) / total : std::size_t(width);
  return fmt::format("[{}{}] {:>{}}/{} {}  {} elapsed  ETA {}", std::string(filled, '#'),
                     std::string(std::size_t(width) - filled, '.'), done, fmt::formatted_size("{}", total), total, unit,
                     format_duration(elapsed), done >= total ? "0:00" : format_duration(eta));
}

Progress::Progress(std::size_t total, std::size_t skipped, bool quiet, std::string unit)
    : total_(total), skipped_(skipped), unit_(std::move(unit)), enabled_(!quiet && ::isatty(STDOUT_FILENO)),
      start_(std::chrono::steady_clock::now()) {
  update(0);
}

Progress::~Progress() { finish(); }

void Progress::update(std::size_t done_now) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const std::size_t done = skipped_ + done_now;
  if (drawn_ && done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double eta = done_now ? elapsed / double(done_now) * double(total_ - done) : NAN;
  std::fputs(("\r" + render(done, total_, elapsed, eta, 30, unit_) + "\033[K").c_str(), stdout);
  std::fflush(stdout);
  drawn_ = true;
}

void Progress::finish() {
  if (drawn_) {
    std::fputs("\n", stdout);
    std::fflush(stdout);
    drawn_ = false;
  }
}

}  // namespace fp8flow::io
