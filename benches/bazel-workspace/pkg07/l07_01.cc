#include "pkg07/l07_01.h"
#include "pkg07/l07_00.h"
#include <algorithm>
#include <numeric>

namespace l07_01 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 15) ^ (b + 64); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 64, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 3 == 0; }));
  total += l07_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l07_01:" + std::to_string(score({seed, seed * 15, 64}));
}
}  // namespace l07_01
