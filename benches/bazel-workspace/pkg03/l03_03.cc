#include "pkg03/l03_03.h"
#include "pkg03/l03_02.h"
#include <algorithm>
#include <numeric>

namespace l03_03 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 7) ^ (b + 30); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 30, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 4 == 0; }));
  total += l03_02::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l03_03:" + std::to_string(score({seed, seed * 7, 30}));
}
}  // namespace l03_03
