#include "pkg09/l09_03.h"
#include "pkg09/l09_02.h"
#include <algorithm>
#include <numeric>

namespace l09_03 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 9) ^ (b + 84); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 84, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 2 == 0; }));
  total += l09_02::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l09_03:" + std::to_string(score({seed, seed * 9, 84}));
}
}  // namespace l09_03
