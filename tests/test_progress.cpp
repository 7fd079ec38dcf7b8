// The progress bar of `fp8flow run`: its text, and that it stays silent when not wanted.
#include <catch2/catch.hpp>

#include "io/progress.hpp"

using namespace fp8flow::io;

TEST_CASE("progress: runs done of total with elapsed time and ETA", "[progress]") {
  CHECK(Progress::render(3, 12, 41.0, 95.0, 12) == "[###.........]  3/12 runs  0:41 elapsed  ETA 1:35");
  CHECK(Progress::render(12, 12, 3700.0, 0.0, 4) == "[####] 12/12 runs  1:01:40 elapsed  ETA 0:00");
  CHECK(Progress::render(0, 5, 0.0, NAN, 5) == "[.....] 0/5 runs  0:00 elapsed  ETA ?");
}

TEST_CASE("progress: durations", "[progress]") {
  CHECK(format_duration(0) == "0:00");
  CHECK(format_duration(75) == "1:15");
  CHECK(format_duration(-1) == "?");
}

TEST_CASE("progress: quiet means no output", "[progress]") {
  Progress p(10, 0, true);
  CHECK(!p.enabled());
  p.update(5);
  p.finish();
}
