#include "pkg03/l03_01.h"
#include "pkg03/l03_00.h"
#include <algorithm>
#include <numeric>

namespace l03_01 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 5) ^ (b + 28); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 28, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 2 == 0; }));
  total += l03_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l03_01:" + std::to_string(score({seed, seed * 5, 28}));
}
}  // namespace l03_01
