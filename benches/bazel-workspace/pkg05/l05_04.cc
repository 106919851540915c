#include "pkg05/l05_04.h"
#include "pkg05/l05_03.h"
#include <algorithm>
#include <numeric>

namespace l05_04 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 13) ^ (b + 49); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 49, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 2 == 0; }));
  total += l05_03::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l05_04:" + std::to_string(score({seed, seed * 13, 49}));
}
}  // namespace l05_04
