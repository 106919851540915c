#include "pkg02/l02_08.h"
#include "pkg02/l02_07.h"
#include <algorithm>
#include <numeric>

namespace l02_08 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 3) ^ (b + 26); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 26, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 7 == 0; }));
  total += l02_07::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l02_08:" + std::to_string(score({seed, seed * 3, 26}));
}
}  // namespace l02_08
