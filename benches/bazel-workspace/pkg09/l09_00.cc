#include "pkg09/l09_00.h"
#include "pkg08/l08_00.h"
#include <algorithm>
#include <numeric>

namespace l09_00 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 6) ^ (b + 81); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 81, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 6 == 0; }));
  total += l08_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l09_00:" + std::to_string(score({seed, seed * 6, 81}));
}
}  // namespace l09_00
