#include "pkg09/l09_08.h"
#include "pkg09/l09_07.h"
#include <algorithm>
#include <numeric>

namespace l09_08 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 14) ^ (b + 89); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 89, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 7 == 0; }));
  total += l09_07::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l09_08:" + std::to_string(score({seed, seed * 14, 89}));
}
}  // namespace l09_08
