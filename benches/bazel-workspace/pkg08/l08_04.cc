#include "pkg08/l08_04.h"
#include "pkg08/l08_03.h"
#include <algorithm>
#include <numeric>

namespace l08_04 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 14) ^ (b + 76); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 76, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 8 == 0; }));
  total += l08_03::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l08_04:" + std::to_string(score({seed, seed * 14, 76}));
}
}  // namespace l08_04
