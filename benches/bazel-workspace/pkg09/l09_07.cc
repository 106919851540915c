#include "pkg09/l09_07.h"
#include "pkg09/l09_06.h"
#include <algorithm>
#include <numeric>

namespace l09_07 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 13) ^ (b + 88); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 88, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 6 == 0; }));
  total += l09_06::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l09_07:" + std::to_string(score({seed, seed * 13, 88}));
}
}  // namespace l09_07
