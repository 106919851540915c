#include "pkg07/l07_06.h"
#include "pkg07/l07_05.h"
#include <algorithm>
#include <numeric>

namespace l07_06 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 7) ^ (b + 69); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 69, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 8 == 0; }));
  total += l07_05::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l07_06:" + std::to_string(score({seed, seed * 7, 69}));
}
}  // namespace l07_06
