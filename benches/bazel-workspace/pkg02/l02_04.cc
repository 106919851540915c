#include "pkg02/l02_04.h"
#include "pkg02/l02_03.h"
#include <algorithm>
#include <numeric>

namespace l02_04 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 12) ^ (b + 22); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 22, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 3 == 0; }));
  total += l02_03::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l02_04:" + std::to_string(score({seed, seed * 12, 22}));
}
}  // namespace l02_04
