#include "pkg09/l09_04.h"
#include "pkg09/l09_03.h"
#include <algorithm>
#include <numeric>

namespace l09_04 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 10) ^ (b + 85); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 85, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 3 == 0; }));
  total += l09_03::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l09_04:" + std::to_string(score({seed, seed * 10, 85}));
}
}  // namespace l09_04
