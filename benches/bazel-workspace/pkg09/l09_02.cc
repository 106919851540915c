#include "pkg09/l09_02.h"
#include "pkg09/l09_01.h"
#include <algorithm>
#include <numeric>

namespace l09_02 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 8) ^ (b + 83); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 83, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 8 == 0; }));
  total += l09_01::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l09_02:" + std::to_string(score({seed, seed * 8, 83}));
}
}  // namespace l09_02
