#include "pkg06/l06_04.h"
#include "pkg06/l06_03.h"
#include <algorithm>
#include <numeric>

namespace l06_04 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 9) ^ (b + 58); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 58, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 4 == 0; }));
  total += l06_03::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l06_04:" + std::to_string(score({seed, seed * 9, 58}));
}
}  // namespace l06_04
