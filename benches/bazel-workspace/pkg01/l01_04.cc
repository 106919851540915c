#include "pkg01/l01_04.h"
#include "pkg01/l01_03.h"
#include <algorithm>
#include <numeric>

namespace l01_04 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 3) ^ (b + 13); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 13, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 8 == 0; }));
  total += l01_03::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l01_04:" + std::to_string(score({seed, seed * 3, 13}));
}
}  // namespace l01_04
