#include "pkg06/l06_07.h"
#include "pkg06/l06_06.h"
#include <algorithm>
#include <numeric>

namespace l06_07 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 12) ^ (b + 61); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 61, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 7 == 0; }));
  total += l06_06::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l06_07:" + std::to_string(score({seed, seed * 12, 61}));
}
}  // namespace l06_07
