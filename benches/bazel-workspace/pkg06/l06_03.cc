#include "pkg06/l06_03.h"
#include "pkg06/l06_02.h"
#include <algorithm>
#include <numeric>

namespace l06_03 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 8) ^ (b + 57); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 57, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 3 == 0; }));
  total += l06_02::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l06_03:" + std::to_string(score({seed, seed * 8, 57}));
}
}  // namespace l06_03
