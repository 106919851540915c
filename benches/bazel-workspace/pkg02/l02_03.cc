#include "pkg02/l02_03.h"
#include "pkg02/l02_02.h"
#include <algorithm>
#include <numeric>

namespace l02_03 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 11) ^ (b + 21); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 21, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 2 == 0; }));
  total += l02_02::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l02_03:" + std::to_string(score({seed, seed * 11, 21}));
}
}  // namespace l02_03
