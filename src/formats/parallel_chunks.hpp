// One way to split a hot loop across OpenMP threads: the batch conversions (elements), the fast
// quantizer (rows) and the fast transposes (row tiles) all run body(begin, end) over [0, n) in chunks of
// `grain` items. Small inputs (fewer than `serial_below` items) and threads == 1 run in one call on the
// calling thread. Chunk boundaries depend only on n and grain, never on the thread count, so results
// that depend on the position (stochastic rounding's Philox index) are the same on any thread count.
#pragma once

#include <algorithm>
#include <cstddef>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fp8flow {

// threads: 0 = OpenMP's default (all cores, or OMP_NUM_THREADS), 1 = serial, k = k threads.
template <class Body>
void parallel_chunks(std::size_t n, std::size_t grain, std::size_t serial_below, int threads, Body&& body) {
  if (n == 0) return;
  if (threads == 1 || n < serial_below || n <= grain) {
    body(std::size_t{0}, n);
    return;
  }
  const auto chunks = static_cast<long long>((n + grain - 1) / grain);
#ifdef _OPENMP
  const int t = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) num_threads(t)
#endif
  for (long long c = 0; c < chunks; ++c) {
    const std::size_t b = std::size_t(c) * grain;
    body(b, std::min(n, b + grain));
  }
}

}  // namespace fp8flow
