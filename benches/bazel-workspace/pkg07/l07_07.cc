#include "pkg07/l07_07.h"
#include "pkg07/l07_06.h"
#include <algorithm>
#include <numeric>

namespace l07_07 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 8) ^ (b + 70); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 70, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 2 == 0; }));
  total += l07_06::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l07_07:" + std::to_string(score({seed, seed * 8, 70}));
}
}  // namespace l07_07
