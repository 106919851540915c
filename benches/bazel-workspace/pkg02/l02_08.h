#ifndef PKG02_L02_08_H
#define PKG02_L02_08_H
#include <string>
#include <vector>

namespace l02_08 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l02_08

#endif
