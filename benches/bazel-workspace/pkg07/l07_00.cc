#include "pkg07/l07_00.h"
#include "pkg06/l06_00.h"
#include <algorithm>
#include <numeric>

namespace l07_00 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 14) ^ (b + 63); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 63, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 2 == 0; }));
  total += l06_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l07_00:" + std::to_string(score({seed, seed * 14, 63}));
}
}  // namespace l07_00
