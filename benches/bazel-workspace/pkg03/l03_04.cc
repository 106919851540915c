#include "pkg03/l03_04.h"
#include "pkg03/l03_03.h"
#include <algorithm>
#include <numeric>

namespace l03_04 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 8) ^ (b + 31); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 31, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 5 == 0; }));
  total += l03_03::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l03_04:" + std::to_string(score({seed, seed * 8, 31}));
}
}  // namespace l03_04
