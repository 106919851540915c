#include "pkg00/l00_04.h"
#include "pkg00/l00_03.h"
#include <algorithm>
#include <numeric>

namespace l00_04 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 7) ^ (b + 4); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 4, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 6 == 0; }));
  total += l00_03::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l00_04:" + std::to_string(score({seed, seed * 7, 4}));
}
}  // namespace l00_04
