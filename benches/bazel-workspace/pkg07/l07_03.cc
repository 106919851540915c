#include "pkg07/l07_03.h"
#include "pkg07/l07_02.h"
#include <algorithm>
#include <numeric>

namespace l07_03 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 4) ^ (b + 66); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 66, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 5 == 0; }));
  total += l07_02::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l07_03:" + std::to_string(score({seed, seed * 4, 66}));
}
}  // namespace l07_03
