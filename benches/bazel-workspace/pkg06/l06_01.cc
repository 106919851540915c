#include "pkg06/l06_01.h"
#include "pkg06/l06_00.h"
#include <algorithm>
#include <numeric>

namespace l06_01 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 6) ^ (b + 55); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 55, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 8 == 0; }));
  total += l06_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l06_01:" + std::to_string(score({seed, seed * 6, 55}));
}
}  // namespace l06_01
