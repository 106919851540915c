#include "pkg00/l00_00.h"
#include <algorithm>
#include <numeric>

namespace l00_00 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 3) ^ (b + 0); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 0, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 2 == 0; }));
  return total;
}

std::string describe(int seed) {
  return "l00_00:" + std::to_string(score({seed, seed * 3, 0}));
}
}  // namespace l00_00
