#include "pkg07/l07_04.h"
#include "pkg07/l07_03.h"
#include <algorithm>
#include <numeric>

namespace l07_04 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 5) ^ (b + 67); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 67, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 6 == 0; }));
  total += l07_03::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l07_04:" + std::to_string(score({seed, seed * 5, 67}));
}
}  // namespace l07_04
