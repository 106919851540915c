#include "pkg01/l01_02.h"
#include "pkg01/l01_01.h"
#include <algorithm>
#include <numeric>

namespace l01_02 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 14) ^ (b + 11); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 11, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 6 == 0; }));
  total += l01_01::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l01_02:" + std::to_string(score({seed, seed * 14, 11}));
}
}  // namespace l01_02
