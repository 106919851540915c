#include "pkg02/l02_07.h"
#include "pkg02/l02_06.h"
#include <algorithm>
#include <numeric>

namespace l02_07 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 15) ^ (b + 25); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 25, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 6 == 0; }));
  total += l02_06::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l02_07:" + std::to_string(score({seed, seed * 15, 25}));
}
}  // namespace l02_07
