#include "pkg02/l02_02.h"
#include "pkg02/l02_01.h"
#include <algorithm>
#include <numeric>

namespace l02_02 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 10) ^ (b + 20); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 20, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 8 == 0; }));
  total += l02_01::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l02_02:" + std::to_string(score({seed, seed * 10, 20}));
}
}  // namespace l02_02
