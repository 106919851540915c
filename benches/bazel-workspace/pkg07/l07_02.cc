#include "pkg07/l07_02.h"
#include "pkg07/l07_01.h"
#include <algorithm>
#include <numeric>

namespace l07_02 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 3) ^ (b + 65); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 65, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 4 == 0; }));
  total += l07_01::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l07_02:" + std::to_string(score({seed, seed * 3, 65}));
}
}  // namespace l07_02
